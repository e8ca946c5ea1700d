package fetch

// syncDir does nothing: Windows cannot open a directory to sync it, and
// its renames are durable once the file itself is synced.
func syncDir(string) error { return nil }
