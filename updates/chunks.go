package updates

import (
	"context"
	"fmt"
	"sync"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/image"
)

// ChunkRange is where a chunk lies: bytes [Offset, Offset+Size) of the
// package stored as blob Package.
type ChunkRange struct {
	Package      string
	Offset, Size int64
}

// Chunk finds the chunk whose SHA-256 is sha in a package the device's
// group may fetch now (what its devices are offered: the current
// deployment's images and the OS release of its feed), for delta updates
// by chunk hash. A chunk of anything else is not found, so the route
// tells a device nothing about other groups' or tenants' images.
func (s *Service) Chunk(ctx context.Context, dev sphere.Device, sha string) (ChunkRange, error) {
	notFound := sphere.Errorf(sphere.ENotFound, "no chunk %s in the packages this device may fetch", sha)
	if len(sha) != 64 || dev.TenantID == "" || dev.DeviceGroupID == "" {
		return ChunkRange{}, notFound
	}
	g, err := s.st.Tenant(dev.TenantID).GetDeviceGroup(ctx, dev.DeviceGroupID)
	if err != nil {
		return ChunkRange{}, err
	}
	targets, _, err := s.groupTargets(ctx, dev.TenantID, g)
	if err != nil {
		return ChunkRange{}, err
	}
	for _, t := range targets {
		idx, err := s.chunkIndex(ctx, t.SHA256)
		if err != nil {
			return ChunkRange{}, err
		}
		if c, ok := idx.find(sha); ok {
			return ChunkRange{Package: t.SHA256, Offset: idx.payloadAt + c.off, Size: c.size}, nil
		}
	}
	return ChunkRange{}, notFound
}

// chunkIndex is one package's chunks by SHA-256 and where its payload
// starts in the package.
type chunkIndex struct {
	payloadAt int64
	bySHA     map[image.Digest]chunkSpan
}

// chunkSpan is where a chunk lies in the payload.
type chunkSpan struct{ off, size int64 }

// find returns the chunk whose SHA-256 is sha, in lowercase hex as chunk
// indexes write it.
func (x *chunkIndex) find(sha string) (chunkSpan, bool) {
	k, ok := image.ParseDigest(sha)
	if !ok {
		return chunkSpan{}, false
	}
	c, ok := x.bySHA[k]
	return c, ok
}

// chunkCache holds chunk indexes of packages, at most maxCachedChunks
// chunks in all (about 64 MiB); it is dropped whole when the next index
// would not fit, which a service with so many live packages at once
// would only do rarely. A package of 16 KiB chunks (format 2) has about
// 65,000 per GiB.
type chunkCache struct {
	mu     sync.Mutex
	m      map[string]*chunkIndex
	chunks int
}

const maxCachedChunks = 1 << 20

func (s *Service) chunkIndex(ctx context.Context, pkg string) (*chunkIndex, error) {
	s.chunks.mu.Lock()
	idx, ok := s.chunks.m[pkg]
	s.chunks.mu.Unlock()
	if ok {
		return idx, nil
	}
	obj, err := s.blobs.Open(ctx, pkg)
	if err != nil {
		return nil, fmt.Errorf("updates.Chunk: package %s: %w", pkg, err)
	}
	defer obj.Close()
	h, err := image.ReadHeader(obj)
	if err != nil {
		return nil, fmt.Errorf("updates.Chunk: package %s: %w", pkg, err)
	}
	idx = &chunkIndex{payloadAt: obj.Size() - h.Metadata.PayloadSize, bySHA: make(map[image.Digest]chunkSpan, len(h.Metadata.Chunks))}
	for _, c := range h.Metadata.Chunks {
		if _, dup := idx.bySHA[c.Digest()]; !dup {
			idx.bySHA[c.Digest()] = chunkSpan{off: c.Offset, size: c.Size}
		}
	}
	s.chunks.mu.Lock()
	if s.chunks.m == nil || s.chunks.chunks+len(idx.bySHA) > maxCachedChunks {
		s.chunks.m, s.chunks.chunks = map[string]*chunkIndex{}, 0
	}
	if _, had := s.chunks.m[pkg]; !had {
		s.chunks.m[pkg] = idx
		s.chunks.chunks += len(idx.bySHA)
	}
	s.chunks.mu.Unlock()
	return idx, nil
}
