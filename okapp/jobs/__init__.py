"""RQ job functions and the scheduler loop. Jobs find their Runtime with okapp.runtime.current()."""
