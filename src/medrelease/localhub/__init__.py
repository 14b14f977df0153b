"""localhub"""
