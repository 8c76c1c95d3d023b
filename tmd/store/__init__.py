"""tmd.store"""
