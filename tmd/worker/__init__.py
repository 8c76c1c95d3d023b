"""tmd.worker"""
