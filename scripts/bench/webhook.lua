-- wrk script: POSTs one pre-signed GitHub pull_request delivery; nothing is signed at
-- run time. The signature covers the body only, so each request gets its own
-- X-GitHub-Delivery without re-signing, and the backend simulator sees distinct
-- deliveries (ACCEPTED, not DUPLICATE).
--
-- wrk -t2 -c32 -d20s --latency -s webhook.lua URL -- BODY_FILE SIGNATURE RUN_ID

-- thread_id is set per thread by setup() as a global of that thread's Lua state.
local counter = 0
local next_thread = 0

function setup(thread)
   next_thread = next_thread + 1
   thread:set("thread_id", next_thread)
end

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["User-Agent"] = "GitHub-Hookshot/wrk"
   wrk.headers["X-GitHub-Event"] = "pull_request"
   wrk.headers["X-Hub-Signature-256"] = args[2]
   run_id = args[3] or "wrk"
end

function request()
   counter = counter + 1
   wrk.headers["X-GitHub-Delivery"] = run_id .. "-" .. thread_id .. "-" .. counter
   return wrk.format()
end
