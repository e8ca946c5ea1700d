package supervisor

import "syscall"

// alive says whether a process exists (and is not a zombie of ours).
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
