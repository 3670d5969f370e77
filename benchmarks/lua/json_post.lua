-- POST one fixed JSON body (an MCP message) with the headers given on wrk's command line (-H).
-- args: the body. Answers that are not 2xx count as bad.
local req
bad = 0

function init(args)
  wrk.headers["Content-Type"] = "application/json"
  req = wrk.format("POST", nil, wrk.headers, args[1])
end

function request()
  return req
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
  end
end
