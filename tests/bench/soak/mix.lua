-- wrk script of tests/bench/soak/run.sh: POSTs that cycle through a JSON echo,
-- a 256 KiB bytes reply and a 64 KiB JSON string reply, each connection
-- pausing $DELAY_MS between its requests (modest, steady load).
local bodies = {
  {"/soaksvc/Echo?forceenv=dev.lever", '["soak"]'},
  {"/soaksvc/Bytes?forceenv=dev.lever", '[262144]'},
  {"/soaksvc/Text?forceenv=dev.lever", '[65536]'},
}
local i = 0
local pause = tonumber(os.getenv("DELAY_MS") or "20")

request = function()
  i = i % #bodies + 1
  return wrk.format("POST", bodies[i][1], {["Content-Type"] = "application/json"}, bodies[i][2])
end

delay = function()
  return pause
end
