package agentmux

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ALPN is the protocol name negotiated in the TLS handshake.
const ALPN = "corral-agent/1"

type frameType uint8

const (
	frameData   frameType = 0
	frameHead   frameType = 1
	frameReset  frameType = 3
	framePing   frameType = 6
	frameGoAway frameType = 7
	frameWindow frameType = 8
)

const (
	flagEnd = 0x1 // DATA, HEAD: no more body in this direction
	flagAck = 0x1 // PING: the answer
)

const (
	headerLen = 9
	// MaxData is the largest DATA payload.
	MaxData = 16 << 10
	// MaxHead is the largest HEAD payload (a request head with 64 KiB of
	// headers and its request line).
	MaxHead = 72 << 10
	// maxReason bounds a RESET or GOAWAY payload.
	maxReason = 256
	// InitialWindow is how many body bytes one direction of a stream may
	// carry beyond what its reader consumed.
	InitialWindow = 256 << 10
	// MaxStreams bounds the streams open at once on one connection.
	MaxStreams = 128
)

type frameHeader struct {
	length uint32
	typ    frameType
	flags  uint8
	stream uint32
}

func (h frameHeader) String() string {
	return fmt.Sprintf("frame type %d flags %#x stream %d length %d", h.typ, h.flags, h.stream, h.length)
}

// protocolError ends the connection: the peer broke the protocol.
type protocolError string

func (e protocolError) Error() string { return "agentmux: protocol error: " + string(e) }

func readHeader(r io.Reader) (frameHeader, error) {
	var b [headerLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return frameHeader{}, err
	}
	h := frameHeader{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    frameType(b[3]),
		flags:  b[4],
		stream: binary.BigEndian.Uint32(b[5:]),
	}
	return h, h.check()
}

// check refuses what no well-behaved peer sends, before its payload is read.
func (h frameHeader) check() error {
	limit := uint32(0)
	switch h.typ {
	case frameData:
		limit = MaxData
	case frameHead:
		limit = MaxHead
	case frameReset, frameGoAway:
		limit = maxReason
	case framePing:
		if h.length != 8 || h.stream != 0 {
			return protocolError("PING must be 8 bytes on stream 0")
		}
		return nil
	case frameWindow:
		if h.length != 4 || h.stream == 0 {
			return protocolError("WINDOW must be 4 bytes on a stream")
		}
		return nil
	default:
		return protocolError(fmt.Sprintf("unknown frame type %d", h.typ))
	}
	if h.length > limit {
		return protocolError(fmt.Sprintf("%s over the limit of %d", h, limit))
	}
	if h.stream == 0 && h.typ != frameGoAway {
		return protocolError(fmt.Sprintf("%s on stream 0", h))
	}
	return nil
}

// appendFrame appends a frame's header and payload to b.
func appendFrame(b []byte, typ frameType, flags uint8, stream uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), byte(typ), flags)
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}
