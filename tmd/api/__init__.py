"""tmd.api"""
