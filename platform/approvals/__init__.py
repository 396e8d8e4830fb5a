"""Approval policies, requests and decisions: the gate in front of consequential actions.

See approvals.registry for how an app plugs a subject type in, approvals.services for the
state machine, and the README section "Approvals" for the behaviour people see.
"""
