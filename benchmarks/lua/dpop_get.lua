-- GET the URL with a DPoP-bound token (RFC 9449) and a fresh proof per request. The proofs
-- are made before the run (benchmarks/dpop.py), one per line, so that signing them costs the
-- load generator nothing while the gateway is timed; thread `id` takes every args[2]-th line
-- from its own. args: the proofs' file, the number of threads, the token. A thread that has
-- used all of its proofs starts over: those replays are refused (401) and counted bad.
local proofs, sent, auth
bad = 0

function init(args)
  local threads = tonumber(args[2])
  auth = "DPoP " .. args[3]
  proofs, sent = {}, 0
  local n = 0
  for line in io.lines(args[1]) do
    if n % threads == id - 1 then
      proofs[#proofs + 1] = line
    end
    n = n + 1
  end
end

function request()
  sent = sent + 1
  local proof = proofs[(sent - 1) % #proofs + 1]
  return wrk.format("GET", nil, {["Authorization"] = auth, ["DPoP"] = proof})
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end
