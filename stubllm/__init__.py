"""Stub OpenAI-compatible LLM server: a test double for the tests and ``libra demo``.

Run it with ``python -m libra.stubllm --port N``. Models and their scripted behaviour live in
:mod:`libra.stubllm.behaviours`, the stub world's ground truth in :mod:`libra.stubllm.truth`,
the HTTP app and fault injection in :mod:`libra.stubllm.server`. Nothing in the product imports
this package; importing it has no side effects.
"""
