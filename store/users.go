package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opensphere/sphere"
)

// TokenPrefix starts every API token so that secret scanners can spot one.
const TokenPrefix = "sph_"

func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newTokenSecret() string {
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

const userColumns = "id, name, operator, created_at"

func scanUser(row interface{ Scan(...any) error }) (sphere.User, error) {
	var u sphere.User
	var c int64
	err := row.Scan(&u.ID, &u.Name, &u.Operator, &c)
	u.CreatedAt = fromMicro(c)
	return u, err
}

// Bootstrap prepares a new installation: if there are no users yet, it creates
// the operator user adminName, a first tenant named tenantName where that user
// is Administrator, and an API token for it. It returns the token secret,
// which is shown once and stored only hashed, or "" when users already exist.
func (s *Store) Bootstrap(ctx context.Context, adminName, tenantName string) (secret string, err error) {
	if err := sphere.ValidateUserName(adminName); err != nil {
		return "", err
	}
	if err := sphere.ValidateName("tenant name", tenantName); err != nil {
		return "", err
	}
	err = s.tx(ctx, func(q *querier) error {
		var n int
		if err := q.queryRow(ctx, "SELECT COUNT(*) FROM users").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		now := s.nowMicro()
		userID, tenantID := newID(), newID()
		if _, err := q.exec(ctx, "INSERT INTO users (id, name, operator, created_at) VALUES (?, ?, 1, ?)", userID, adminName, now); err != nil {
			return err
		}
		if _, err := q.exec(ctx, "INSERT INTO tenants (id, name, name_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
			tenantID, tenantName, strings.ToLower(tenantName), now, now); err != nil {
			return err
		}
		if _, err := q.exec(ctx, "INSERT INTO roles (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?)",
			tenantID, userID, sphere.RoleAdministrator, now); err != nil {
			return err
		}
		secret, err = insertToken(ctx, q, userID, "bootstrap", nil, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store.Bootstrap: %w", err)
	}
	return secret, nil
}

// RecoverOperator issues a new token for the operator user name, creating
// that user as an operator if it does not exist. It is the way back in when
// every operator token is lost; only someone with access to the database
// (the service's host) can call it.
func (s *Store) RecoverOperator(ctx context.Context, name string) (secret string, err error) {
	if err := sphere.ValidateUserName(name); err != nil {
		return "", err
	}
	err = s.tx(ctx, func(q *querier) error {
		now := s.nowMicro()
		var id string
		err := q.queryRow(ctx, "SELECT id FROM users WHERE name = ?", name).Scan(&id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			id = newID()
			if _, err := q.exec(ctx, "INSERT INTO users (id, name, operator, created_at) VALUES (?, ?, 1, ?)", id, name, now); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if _, err := q.exec(ctx, "UPDATE users SET operator = 1 WHERE id = ?", id); err != nil {
				return err
			}
		}
		secret, err = insertToken(ctx, q, id, "recovery "+fromMicro(now).Format(time.RFC3339), nil, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store.RecoverOperator: %w", err)
	}
	return secret, nil
}

func insertToken(ctx context.Context, q *querier, userID, name string, expires *time.Time, now int64) (string, error) {
	secret := newTokenSecret()
	var exp sql.NullInt64
	if expires != nil {
		exp = sql.NullInt64{Int64: expires.UTC().UnixMicro(), Valid: true}
	}
	_, err := q.exec(ctx, "INSERT INTO tokens (id, user_id, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
		newID(), userID, name, hashToken(secret), now, exp)
	return secret, err
}

// Authenticate returns the user that owns a token secret. Unknown, malformed
// and expired tokens all give the same EUnauthenticated error.
func (s *Store) Authenticate(ctx context.Context, secret string) (sphere.User, error) {
	unauth := sphere.Errorf(sphere.EUnauthenticated, "the bearer token is not valid or has expired; run `sphere login` with a current token")
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 128 {
		return sphere.User{}, unauth
	}
	var exp sql.NullInt64
	var u sphere.User
	var c int64
	err := s.queryRow(ctx, "SELECT u.id, u.name, u.operator, u.created_at, t.expires_at FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?",
		hashToken(secret)).Scan(&u.ID, &u.Name, &u.Operator, &c, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return sphere.User{}, unauth
	}
	if err != nil {
		return sphere.User{}, fmt.Errorf("store.Authenticate: %w", err)
	}
	if exp.Valid && s.nowMicro() >= exp.Int64 {
		return sphere.User{}, unauth
	}
	u.CreatedAt = fromMicro(c)
	return u, nil
}

// RoleIn returns the user's role in a tenant, or "" if it holds none.
func (s *Store) RoleIn(ctx context.Context, userID, tenantID string) (sphere.Role, error) {
	var r string
	err := s.queryRow(ctx, "SELECT role FROM roles WHERE user_id = ? AND tenant_id = ?", userID, tenantID).Scan(&r)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store.RoleIn: %w", err)
	}
	return sphere.Role(r), nil
}

// CreateToken issues a new token for a user. expires may be nil for a token
// that does not expire.
func (s *Store) CreateToken(ctx context.Context, userID, name string, expires *time.Time) (sphere.Token, string, error) {
	if name == "" {
		return sphere.Token{}, "", sphere.Errorf(sphere.EInvalid, "token name is required")
	}
	if err := sphere.ValidateText("token name", name, 100); err != nil {
		return sphere.Token{}, "", err
	}
	now := s.nowMicro()
	if expires != nil && expires.UnixMicro() <= now {
		return sphere.Token{}, "", sphere.Errorf(sphere.EInvalid, "token expiry %s is in the past", expires.UTC().Format(time.RFC3339))
	}
	var secret string
	err := s.tx(ctx, func(q *querier) (err error) {
		secret, err = insertToken(ctx, q, userID, name, expires, now)
		return err
	})
	if err != nil {
		return sphere.Token{}, "", fmt.Errorf("store.CreateToken: %w", err)
	}
	var tok sphere.Token
	err = s.queryRow(ctx, "SELECT id FROM tokens WHERE hash = ?", hashToken(secret)).Scan(&tok.ID)
	if err != nil {
		return sphere.Token{}, "", fmt.Errorf("store.CreateToken: %w", err)
	}
	tok.UserID, tok.Name, tok.CreatedAt = userID, name, fromMicro(now)
	if expires != nil {
		e := expires.UTC()
		tok.ExpiresAt = &e
	}
	return tok, secret, nil
}

// ListTokens lists a user's tokens (never their secrets).
func (s *Store) ListTokens(ctx context.Context, userID string, p PageRequest) (sphere.Page[sphere.Token], error) {
	size, after, err := p.cursor("tokens")
	if err != nil {
		return sphere.Page[sphere.Token]{}, err
	}
	items, err := collect(ctx, s, "SELECT id, user_id, name, created_at, expires_at FROM tokens WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
		[]any{userID, after, size + 1}, func(row interface{ Scan(...any) error }) (sphere.Token, error) {
			var t sphere.Token
			var c int64
			var e sql.NullInt64
			err := row.Scan(&t.ID, &t.UserID, &t.Name, &c, &e)
			t.CreatedAt, t.ExpiresAt = fromMicro(c), fromMicroPtr(e)
			return t, err
		})
	if err != nil {
		return sphere.Page[sphere.Token]{}, fmt.Errorf("store.ListTokens: %w", err)
	}
	return finishPage(items, size, "tokens", func(t sphere.Token) string { return t.ID }), nil
}

// DeleteToken revokes one of a user's tokens.
func (s *Store) DeleteToken(ctx context.Context, userID, tokenID string) error {
	res, err := s.exec(ctx, "DELETE FROM tokens WHERE id = ? AND user_id = ?", tokenID, userID)
	if err != nil {
		return fmt.Errorf("store.DeleteToken: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Errorf(sphere.ENotFound, "token %q not found", tokenID)
	}
	return nil
}
