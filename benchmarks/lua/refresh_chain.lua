-- POST /oauth/token, grant_type=refresh_token, with HTTP Basic. Refresh tokens rotate, so each
-- is sent once: thread `id` takes its own slice of the seed file (one token per line), and the
-- new refresh token of every answer goes to the back of its queue, for a later request.
-- args: the Authorization header value, the seed file, seeds per thread. A failed refresh
-- ends its chain (counted bad); once a thread has no token left it sends "exhausted" (bad too).
local auth
local queue, head, tail = {}, 1, 0
bad = 0

function init(args)
  auth = args[1]
  local per = tonumber(args[3])
  local first, n = (id - 1) * per + 1, 0
  for line in io.lines(args[2]) do
    n = n + 1
    if n >= first and n < first + per then
      tail = tail + 1
      queue[tail] = line
    end
  end
end

function request()
  local token = "exhausted"
  if head <= tail then
    token = queue[head]
    queue[head] = nil
    head = head + 1
  end
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = auth,
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = status == 200 and body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    tail = tail + 1
    queue[tail] = token
  else
    bad = bad + 1
  end
end
