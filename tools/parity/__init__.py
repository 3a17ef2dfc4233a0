"""Side-by-side parity runs: each method's official implementation beside ours, compared bit for bit.

Modules: ``repos`` (pinned official commits, clone or verify a checkout), ``worlds`` (random CLIPs and
synthetic datasets), ``scenario`` and ``scenarios/`` (what is run, per method), ``launch`` (the
subprocess launcher: shims for the official code, recorders for both sides), ``drivers`` (in-process
recipes behind the unit tests' pins), ``runner`` (one side's subprocesses), ``compare``, ``pins``,
``session`` (one scenario on every side) and ``cli``. See docs/parity.md.
"""
