-- bench/ingest.lua: wrk script that POSTs one signed GitHub push body with a fresh delivery id per request and counts the answers by status.
--
-- Environment: BENCH_BODY (file holding the exact signed body), BENCH_SIG (the
-- X-Hub-Signature-256 value), BENCH_RUN (a token that keeps delivery
-- ids unique across runs). done() prints one line "BENCH key=value ..." for bench/run.

local threads = {}

function setup(thread)
	thread:set("tid", #threads + 1)
	table.insert(threads, thread)
end

function init(args)
	local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
	body = f:read("*a")
	f:close()
	prefix = string.format("%s-%d-", os.getenv("BENCH_RUN") or "run", tid)
	headers = {
		["Content-Type"] = "application/json",
		["User-Agent"] = "GitHub-Hookshot/bench",
		["X-GitHub-Event"] = "push",
		["X-Hub-Signature-256"] = os.getenv("BENCH_SIG"),
	}
	sent = 0
	s2xx = 0
	s401 = 0
	s5xx = 0
	sother = 0
end

-- A request of its own each time: GitHub never repeats a delivery id, and deployd answers a
-- repeated one as a duplicate without queueing anything, which would flatter it.
function request()
	sent = sent + 1
	headers["X-GitHub-Delivery"] = prefix .. sent
	return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, resp)
	if status >= 200 and status < 300 then
		s2xx = s2xx + 1
	elseif status == 401 then
		s401 = s401 + 1
	elseif status >= 500 then
		s5xx = s5xx + 1
	else
		sother = sother + 1
	end
end

function done(summary, latency, requests)
	local a, b, c, o = 0, 0, 0, 0
	for _, t in ipairs(threads) do
		a = a + t:get("s2xx")
		b = b + t:get("s401")
		c = c + t:get("s5xx")
		o = o + t:get("sother")
	end
	local e = summary.errors
	io.write(string.format("BENCH rps=%.1f p50_us=%d p99_us=%d requests=%d n2xx=%d n401=%d n5xx=%d nother=%d " ..
	    "sockerr=%d timeouts=%d\n",
	    summary.requests / (summary.duration / 1e6), latency:percentile(50),
	    latency:percentile(99), summary.requests, a, b, c, o,
	    e.connect + e.read + e.write, e.timeout))
end
