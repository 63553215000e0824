"""Observability: what lets tools and people see into a running server (gRPC health and
reflection, OpenRPC).
"""
