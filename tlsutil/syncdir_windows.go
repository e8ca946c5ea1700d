package tlsutil

// SyncDir does nothing: Windows cannot open a directory to sync it. The
// agent runs on Linux; this only keeps the module building elsewhere.
func SyncDir(string) error { return nil }
