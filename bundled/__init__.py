"""The bundled models' code: definitions, codecs, features, generated data and corpus.

Below the domains that use it (the trainers in ``pipelines``, the replicas in
``serving``, the suites in ``evaluation``) and above ``registry`` and ``paved``:
nothing here imports a domain, so every user can depend on it.
"""
