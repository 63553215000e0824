"""The tutorial's programs, importable: ``wirecall.tutorial.calculator`` (served by
``wirecall serve wirecall.tutorial.calculator:Calculator``), ``.greeter`` and ``.pubsub``
(gRPC, from the protos in ``protos/`` and :mod:`wirecall.pubsub`), ``.demo`` (the main demo).
The runnable example scripts, run by the tests, are in the repository's ``examples/``."""
