"""tmd.localkube"""
