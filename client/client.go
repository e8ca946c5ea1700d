// Package client is a small Go client for the OpenSphere admin API, used by
// the sphere CLI. It speaks JSON over HTTPS with a bearer token and turns
// the API's error shape into *Error values.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/opensphere/sphere/api"
)

// Config says how to reach the service.
type Config struct {
	// Server is the base URL, e.g. https://127.0.0.1:8443. Required.
	Server string
	// Token is the API bearer token; empty sends none.
	Token string
	// CAFile is a PEM file of certificates to trust for the server, e.g.
	// the self-signed sphere-data/tls/server.crt. Empty uses the system pool.
	CAFile string
	// Insecure skips server certificate verification. Only for a first
	// look at a lab service; prefer CAFile.
	Insecure bool
	// Timeout bounds each JSON request; zero means 30 seconds. Uploads and
	// downloads have no overall limit (they may be large) but fail when
	// the service stops answering.
	Timeout time.Duration
}

// Client calls the admin API.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	timeout time.Duration
}

// New builds a client.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("no server given; run `sphere login --server URL --token TOKEN` first")
	}
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http(s) URL such as https://127.0.0.1:8443", cfg.Server)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure}
	if cfg.CAFile != "" {
		pemData, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.ResponseHeaderTimeout = 5 * time.Minute // a large upload is checked before the answer
	return &Client{base: u, token: cfg.Token, http: &http.Client{Transport: tr}, timeout: timeout}, nil
}

// Error is an error answered by the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// Upload streams body (a file, never read whole into memory) as
// application/octet-stream and decodes the JSON answer into out.
func (c *Client) Upload(ctx context.Context, path string, body io.Reader, out any) error {
	return c.send(ctx, "POST", path, nil, body, "application/octet-stream", out, nil)
}

// Download streams the answer of a GET into w.
func (c *Client) Download(ctx context.Context, path string, w io.Writer) error {
	return c.send(ctx, "GET", path, nil, nil, "", nil, w)
}

// Send sends a request without a body and streams the answer into w (for
// routes that answer a file, such as a TUF root to sign).
func (c *Client) Send(ctx context.Context, method, path string, w io.Writer) error {
	return c.send(ctx, method, path, nil, nil, "", nil, w)
}

// Do sends one request. path is relative to the server (e.g.
// "/api/v1/tenants"); query may be nil; body, if not nil, is sent as JSON;
// out, if not nil, receives the JSON answer.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var rd io.Reader
	ct := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd, ct = bytes.NewReader(b), "application/json"
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.send(ctx, method, path, query, rd, ct, out, nil)
}

func (c *Client) send(ctx context.Context, method, path string, query url.Values, rd io.Reader, contentType string, out any, sink io.Writer) error {
	// path arrives escaped (url.PathEscape on each segment), so it is
	// joined as text rather than through url.URL.Path, which would escape
	// it again.
	u, err := url.Parse(c.base.String() + path)
	if err != nil {
		return fmt.Errorf("bad request path %q: %w", path, err)
	}
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &uerr) {
			return fmt.Errorf("%s: the server's certificate is not trusted; pass --ca-file with the service's certificate (sphere-data/tls/server.crt for the self-signed default): %w", u.Host, err)
		}
		return fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	if sink != nil && resp.StatusCode < 300 {
		if _, err := io.Copy(sink, resp.Body); err != nil {
			return fmt.Errorf("%s %s: %w", method, u.Path, err)
		}
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, u.Path, err)
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &Error{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(data))}
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer is not the expected JSON: %w", method, u.Path, err)
		}
	}
	return nil
}
