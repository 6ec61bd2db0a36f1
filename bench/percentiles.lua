-- wrk script: print more latency percentiles than --latency does (p95, p97,
-- p98, p99.5, p99.9), one line at the end of the run. Used by bench/run.sh.
done = function(summary, latency, requests)
  local s = ""
  for _, p in ipairs({50, 90, 95, 97, 98, 99, 99.5, 99.9}) do
    s = s .. string.format("p%s=%.2fms ", p, latency:percentile(p) / 1000)
  end
  s = s .. string.format("max=%.2fms n=%d", latency.max / 1000, summary.requests)
  io.write(s .. "\n")
end
