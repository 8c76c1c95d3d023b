"""tmd.shim"""
