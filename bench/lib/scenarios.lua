-- wrk scenarios for bench/server.sh. One script, chosen by the SCENARIO environment variable; the test
-- data (one record per line, tab-separated) is read from $DATA_DIR by each wrk thread.
--
--   health     GET /health                                     (static endpoint: the ceiling)
--   metadata   GET /fhir/metadata                              (static, 400 kB CapabilityStatement)
--   read       GET /fhir/Patient/{id}                          ids.txt:   id
--   search_name GET /fhir/Patient?name={n}&birthdate={d}       names.txt: name \t birthDate
--   search_obs GET /fhir/Observation?patient={p}&code={c}&_sort=-date   obs.txt: patient id \t code
--   create     POST /fhir/Patient (JP_Patient, unique identifier per request)   names.txt
--   summary    GET /fhir/Patient/{id}/$summary?mode=emergency (bench/registry.sh)  summary.txt: id
--   lookup     GET /fhir/Patient?name={kana}&birthdate={d} over registered patients (bench/registry.sh)
--                                                             lookup.txt: kana family name \t birthDate
--
-- BEARER_TOKEN (environment), when set, is sent as `Authorization: Bearer …` on every request.
--
-- done() prints one machine-readable line: BENCHJSON {...} (latencies in microseconds).

local scenario = os.getenv("SCENARIO") or "health"
local data_dir = os.getenv("DATA_DIR") or "."

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function load(file)
  local rows = {}
  local f = assert(io.open(data_dir .. "/" .. file, "r"), "cannot open " .. data_dir .. "/" .. file)
  for line in f:lines() do
    if line ~= "" then
      local cols = {}
      for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
      rows[#rows + 1] = cols
    end
  end
  f:close()
  assert(#rows > 0, file .. " is empty")
  return rows
end

-- main state: number the threads so each gets its own random stream and identifier prefix
local threads = {}
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local rows
local seq = 0
function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  if scenario == "read" then
    rows = load("ids.txt")
  elseif scenario == "search_name" or scenario == "create" then
    rows = load("names.txt")
  elseif scenario == "search_obs" then
    rows = load("obs.txt")
  elseif scenario == "summary" then
    rows = load("summary.txt")
  elseif scenario == "lookup" then
    rows = load("lookup.txt")
  end
  -- precompute request paths for the GET scenarios (keeps wrk's Lua cost per request minimal)
  if scenario == "read" or scenario == "search_name" or scenario == "search_obs" or scenario == "summary"
      or scenario == "lookup" then
    local paths = {}
    for i, r in ipairs(rows) do
      if scenario == "read" then
        paths[i] = "/fhir/Patient/" .. urlencode(r[1])
      elseif scenario == "summary" then
        paths[i] = "/fhir/Patient/" .. urlencode(r[1]) .. "/$summary?mode=emergency"
      elseif scenario == "search_name" or scenario == "lookup" then
        paths[i] = "/fhir/Patient?name=" .. urlencode(r[1]) .. "&birthdate=" .. urlencode(r[2])
      else
        paths[i] = "/fhir/Observation?patient=" .. urlencode(r[1]) .. "&code=" .. urlencode(r[2]) .. "&_sort=-date"
      end
    end
    rows = paths
  end
  wrk.headers["Accept"] = "application/fhir+json"
  local token = os.getenv("BEARER_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

local create_tpl = '{"resourceType":"Patient","meta":{"profile":["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"]},'
  .. '"identifier":[{"system":"urn:oid:1.2.392.100495.20.3.51.1","value":"%s"}],'
  .. '"name":[{"use":"official","text":"%s","family":"%s"}],"gender":"%s","birthDate":"%s"}'

function request()
  if scenario == "health" then
    return wrk.format("GET", "/health")
  elseif scenario == "metadata" then
    return wrk.format("GET", "/fhir/metadata")
  elseif scenario == "create" then
    seq = seq + 1
    local r = rows[math.random(#rows)]
    local ident = string.format("BENCH-%d-%d-%d", os.time(), tid or 0, seq)
    local body = string.format(create_tpl, ident, r[1], r[1], (seq % 2 == 0) and "male" or "female", r[2])
    return wrk.format("POST", "/fhir/Patient",
      { ["Content-Type"] = "application/fhir+json", ["Authorization"] = wrk.headers["Authorization"] }, body)
  else
    return wrk.format("GET", rows[math.random(#rows)])
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"scenario":"%s","requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    scenario, summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
