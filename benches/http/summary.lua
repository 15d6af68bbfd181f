-- wrk's results for benches/http as one JSON line on stdout (the only line of wrk's output the
-- report reads). Latencies are in microseconds; `errors` adds wrk's socket errors (connect,
-- read, write, timeout) and its count of answers with a status of 400 or more.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests,
    summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50),
    latency:percentile(99)
  ))
end
