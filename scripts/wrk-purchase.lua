-- wrk script: every request a purchase by a new user, so on an item whose
-- stock outlasts the run every request is a real win. Each wrk thread
-- numbers its users with its own prefix.
--   wrk -t2 -c64 -d8s -s scripts/wrk-purchase.lua http://host/api/v1/sales/S/items/I/purchase

local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("prefix", "w" .. threads .. "-" .. os.time() .. "-")
end

function request()
  counter = counter + 1
  local id = prefix .. counter
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
    '{"user_id":"' .. id .. '","request_id":"' .. id .. '"}')
end
