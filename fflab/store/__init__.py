"""The run store in Redis, one module per owner.

keys         the key layout, the stored run record and its encoding, status events
runs         the API's side: create, read, list, cancel and delete runs; metrics and models
attempts     the worker's side: claim, progress, checkpoints and the end of an attempt, leases
attempt_cap  the attempts that end without ending their run (worker lost, Redis given up on) and
             FF_MAX_ATTEMPTS, which ends such a run failed
workers      the worker registry (the API's /readyz lists it)
"""
