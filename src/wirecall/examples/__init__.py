"""The tutorial's programs, importable: ``wirecall.examples.calculator`` and friends."""
