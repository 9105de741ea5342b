// Package sealbox seals small records with AES-256-GCM under the hub's
// template key: a random nonce is prepended to each ciphertext, and the
// caller's associated data binds it to its row, so a ciphertext copied to
// another row does not open. hub/facetemplates (templates and photos) and
// hub/facereview (unrecognised faces' crops and descriptors) share it.
package sealbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the key length in bytes (AES-256).
const KeySize = 32

// ErrShort is returned by Open for a ciphertext shorter than a nonce and a
// tag.
var ErrShort = errors.New("ciphertext too short")

// Box seals and opens with one key. It is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// New returns a Box for key, which must be KeySize bytes.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key must be %d bytes, got %d", KeySize, len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal returns nonce || ciphertext of plain bound to ad.
func (b *Box) Seal(plain, ad []byte) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return b.aead.Seal(nonce, nonce, plain, ad), nil
}

// Open returns the plaintext of sealed, which must have been sealed with
// the same key and ad.
func (b *Box) Open(sealed, ad []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, ErrShort
	}
	return b.aead.Open(nil, sealed[:n], sealed[n:], ad)
}
