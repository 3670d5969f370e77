-- POST one fixed form with HTTP Basic (the issuer's token and introspection endpoints).
-- args: the Authorization header value, the form body, and optionally a Lua pattern that
-- every good answer's body matches (e.g. '"active"%s*:%s*true'); answers that do not, and
-- non-2xx ones, count as bad.
local req, expect
bad = 0

function init(args)
  req = wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = args[1],
  }, args[2])
  expect = args[3]
end

function request()
  return req
end

function response(status, headers, body)
  if status < 200 or status > 299 or (expect and not body:find(expect)) then
    bad = bad + 1
  end
end
