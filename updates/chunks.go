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
		if c, ok := idx.bySHA[sha]; ok {
			return ChunkRange{Package: t.SHA256, Offset: idx.payloadAt + c.Offset, Size: c.Size}, nil
		}
	}
	return ChunkRange{}, notFound
}

// chunkIndex is one package's chunks by SHA-256 and where its payload
// starts in the package.
type chunkIndex struct {
	payloadAt int64
	bySHA     map[string]image.Chunk
}

// chunkCache holds chunk indexes of packages; it is dropped whole when it
// reaches maxIndexes, which a service with so many live packages at once
// would only do rarely.
type chunkCache struct {
	mu sync.Mutex
	m  map[string]*chunkIndex
}

const maxIndexes = 256

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
	idx = &chunkIndex{payloadAt: obj.Size() - h.Metadata.PayloadSize, bySHA: make(map[string]image.Chunk, len(h.Metadata.Chunks))}
	for _, c := range h.Metadata.Chunks {
		idx.bySHA[c.SHA256] = c
	}
	s.chunks.mu.Lock()
	if s.chunks.m == nil || len(s.chunks.m) >= maxIndexes {
		s.chunks.m = map[string]*chunkIndex{}
	}
	s.chunks.m[pkg] = idx
	s.chunks.mu.Unlock()
	return idx, nil
}
