"""Privacy: erasing a person on request (``/v1/erasures``, ``npsd erase``) and deleting what is
older than the retention settings (a periodic task of the job worker)."""
