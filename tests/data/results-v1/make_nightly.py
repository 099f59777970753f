"""Adds a nightly-kind run to the v1 fixture with today's (v1-schema) store: two results copied
from the measured run onto another board, a failed job, a stored plan and a verdict."""
import sys, uuid
from dataclasses import replace
from controller.store import ResultStore, JobRecord
path = sys.argv[1]
store = ResultStore(path)
src = store.latest_run()
rows = store.results(src)
run = store.new_run("farm matrix.yaml", "nightly", plan={"matrix": "matrix.yaml", "devices": "devices.yaml",
                                                       "leases": "sqlite:///leases.sqlite", "cache_dir": "cache"})
for r in rows:
    store.add_variant(run, r.variant)
for i, r in enumerate(rows):
    job = JobRecord(uuid.uuid4().hex, run, r.job.model, r.job.variant, "x86-02", r.job.backend, r.job.artifact_sha256)
    store.add_job(job, target="x86-pool")
    store.set_job_device(job.id, "x86-02", r.job.backend)
    res = type(r.result)(); res.CopyFrom(r.result); res.job_id = job.id
    store.add_result(job, res)
failed = JobRecord(uuid.uuid4().hex, run, rows[0].job.model, rows[0].job.variant, "x86-03", "onnxruntime",
                   rows[0].job.artifact_sha256)
store.add_job(failed, target="x86-03")
store.add_failure(failed, "transport", "device 'x86-03' at 127.0.0.9:50051: unavailable: connection refused")
store.finish_run(run, "partial")
store.set_verdict(run, "unchanged")
store.close()
print(src, run)
