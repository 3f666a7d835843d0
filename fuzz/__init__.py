"""Coverage-guided fuzz harnesses for every decoder (run with ``./dev fuzz TARGET SECONDS``).

Each ``fuzz_*`` module has a plain ``check(data)`` (the property, importable without
atheris, so ``tests/hardening`` can replay any input) and a ``main()`` that hands
``check`` to atheris.
"""
