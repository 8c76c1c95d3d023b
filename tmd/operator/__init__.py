"""tmd.operator"""
