package template

import (
	"bufio"
	"context"
	_ "crypto/sha256" // digest algorithms go-digest hashes with
	_ "crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// This file checks image content before it is used: every layer's bytes
// against the digest and size its manifest (or, for docker archives, the
// image config's diff id) names, before anything of any layer is
// extracted, and the JSON blobs an OCI layout's index names.

// maxJSONBlob bounds index, manifest and config blobs.
const maxJSONBlob = 8 << 20

// mismatchError says that image content is not what the image's
// metadata says it is.
type mismatchError struct {
	What string // e.g. "layer 2 of 3 (blobs/sha256/ab…)"
	Kind string // "digest", "size", "content digest (diff id)"
	Want string
	Got  string
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%s: %s mismatch: expected %s, got %s", e.What, e.Kind, e.Want, e.Got)
}

// digestOf returns a digester for d's algorithm, refusing algorithms Go
// cannot compute (blobPath already limits them to sha256 and sha512).
func digestOf(d digest.Digest) (digest.Digester, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("invalid digest %q: %w", d, err)
	}
	return d.Algorithm().Digester(), nil
}

// readBlobJSON decodes the blob desc names in an OCI layout into v after
// checking its size and digest against desc.
func readBlobJSON(root *os.Root, desc ocispec.Descriptor, what string, v any) error {
	p, err := blobPath(desc.Digest)
	if err != nil {
		return err
	}
	if desc.Size < 0 || desc.Size > maxJSONBlob {
		return fmt.Errorf("%s (%s): size %d in its descriptor is out of range", what, p, desc.Size)
	}
	b, err := readBlobFile(root, p, desc.Digest, what)
	if err != nil {
		return err
	}
	if desc.Size > 0 && int64(len(b)) != desc.Size {
		return &mismatchError{What: what + " (" + p + ")", Kind: "size", Want: fmt.Sprint(desc.Size), Got: fmt.Sprint(len(b))}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// readBlobFile reads the file p (at most maxJSONBlob bytes) and checks
// it against digest d.
func readBlobFile(root *os.Root, p string, d digest.Digest, what string) ([]byte, error) {
	dg, err := digestOf(d)
	if err != nil {
		return nil, err
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.TeeReader(io.LimitReader(f, maxJSONBlob+1), dg.Hash()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(b) > maxJSONBlob {
		return nil, fmt.Errorf("%s (%s) is larger than %d bytes", what, p, maxJSONBlob)
	}
	if got := dg.Digest(); got != d {
		return nil, &mismatchError{What: what + " (" + p + ")", Kind: "digest", Want: string(d), Got: string(got)}
	}
	return b, nil
}

// dockerConfigDigest is the digest a docker-archive's config file name
// states: docker save names it <hex>.json (before docker 25) or
// blobs/sha256/<hex> (docker 25 and later).
func dockerConfigDigest(name string) (digest.Digest, bool) {
	base := path.Base(cleanRel(name))
	base = strings.TrimSuffix(base, ".json")
	if !sha256Re.MatchString(base) {
		return "", false
	}
	return digest.NewDigestFromEncoded(digest.SHA256, base), true
}

// verifiedLayers opens every layer of img and checks it against its
// digest and size (OCI) or its diff id (docker archive) before any is
// extracted. With private false the source may be changed by others (a
// layout in a user's directory): each layer is then copied, while it is
// hashed, into an unlinked temporary file in scratch (0600, in nexcage's
// private scratch directory), and the copy is what gets extracted, so
// what was verified is what is applied. With private true (an archive
// nexcage unpacked into its own scratch space) the layer is hashed in
// place. The returned files are positioned at their start; the caller
// closes them. On error none stays open and nothing is left in scratch.
func verifiedLayers(ctx context.Context, src *os.Root, img *image, private bool, scratch string) (files []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			files = nil
		}
	}()
	for i, l := range img.layers {
		if err := ctx.Err(); err != nil {
			return files, err
		}
		what := fmt.Sprintf("layer %d of %d (%s)", i+1, len(img.layers), l.path)
		f, err := verifyLayer(src, l, what, private, scratch)
		if err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}

func verifyLayer(src *os.Root, l layerRef, what string, private bool, scratch string) (_ *os.File, err error) {
	if l.digest == "" && l.diffID == "" {
		return nil, fmt.Errorf("%s: the image names no digest for it, so it cannot be verified", what)
	}
	in, err := src.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	f := in
	if !private {
		defer in.Close()
		if f, err = os.CreateTemp(scratch, "layer-*"); err != nil {
			return nil, err
		}
		// Unlinked at once: the copy lives as long as the descriptor,
		// and a crash leaves nothing behind.
		_ = os.Remove(f.Name())
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	var r io.Reader = in
	if l.size >= 0 {
		// One byte more than the manifest says, to notice a longer blob
		// without reading all of it.
		r = io.LimitReader(in, l.size+1)
	}
	var dg digest.Digester
	var w io.Writer = io.Discard
	if l.digest != "" {
		if dg, err = digestOf(l.digest); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		w = dg.Hash()
	}
	if !private {
		w = io.MultiWriter(f, w)
	}
	var n int64
	if !private || dg != nil || l.size >= 0 {
		// (A docker layer in our scratch space has only its diff id,
		// checked below: no need to read it twice.)
		if n, err = io.Copy(w, r); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if l.size >= 0 && n != l.size {
		got := fmt.Sprint(n)
		if n > l.size {
			got = "more than " + fmt.Sprint(l.size)
		}
		return nil, &mismatchError{What: what, Kind: "size", Want: fmt.Sprint(l.size), Got: got + " bytes"}
	}
	if dg != nil {
		if got := dg.Digest(); got != l.digest {
			return nil, &mismatchError{What: what, Kind: "digest", Want: string(l.digest), Got: string(got)}
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if l.diffID != "" {
		if err := checkDiffID(f, l.diffID, what); err != nil {
			return nil, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// checkDiffID compares the digest of the uncompressed stream of f with
// the image config's diff id.
func checkDiffID(f io.Reader, want digest.Digest, what string) error {
	dg, err := digestOf(want)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	dr, _, done, err := openCompressed(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	if _, err := io.Copy(dg.Hash(), dr); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got := dg.Digest(); got != want {
		return &mismatchError{What: what, Kind: "content digest (diff id)", Want: string(want), Got: string(got)}
	}
	return nil
}
