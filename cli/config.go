package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opensphere/sphere/tlsutil"
)

// Config is what `sphere login` saves: where the service is, how to trust
// it, the token, and the selected tenant. The file is mode 0600 because it
// holds the token.
type Config struct {
	Server   string `json:"server"`
	Token    string `json:"token"`
	CAFile   string `json:"ca_file,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
}

func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("config %s is not valid JSON (%v); run `sphere login` again to rewrite it", path, err)
	}
	return &c, nil
}

func saveConfig(path string, c *Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return tlsutil.WriteFileAtomic(path, append(data, '\n'), 0o600)
}
