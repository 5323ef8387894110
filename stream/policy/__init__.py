"""Policies: versioned files of rules that turn detector outputs into actions, run by the worker.

* :mod:`stream.policy.files` reads and validates policy files (errors name file, line and field);
* :mod:`stream.policy.registry` keeps policy versions and the active / shadow slots in the store,
  every switch audited;
* :mod:`stream.policy.engine` is the worker's policy stage (evaluation, circuit breakers);
* :mod:`stream.policy.compare` compares a shadow policy with the active one and with reviewers.

The evaluation itself is pure and lives in :mod:`detectors.policy`.
"""
