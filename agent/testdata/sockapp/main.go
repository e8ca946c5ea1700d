// Command sockapp is a test app: it calls the agent's app socket as the
// app it runs as, prints what it was told and its uid, and stays up.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	sock := os.Getenv("SPHERE_APP_SOCKET")
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	fmt.Printf("uid=%d\n", os.Getuid())
	resp, err := c.Post("http://agent/v1/uplink/publish", "application/json", strings.NewReader(`{"topic":"t","payload":"","qos":1}`))
	if err != nil {
		fmt.Println("error:", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("status=%d %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	time.Sleep(time.Hour)
}
