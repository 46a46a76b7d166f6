"""
A txregistry storage driver that keeps files in SQLite: an example of a
third-party driver.  See L{txregistry_sqlite.driver}.
"""
