package jit

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names in the kernel; other programs and people read them with `nft list
// table inet corral`.
const (
	TableName = "corral"
	chainName = "input"
	setPorts  = "managed"
	setV4     = "grants4"
	setV6     = "grants6"
	// Priority of the input chain: before the usual filter chains at 0.
	Priority = -10
)

var (
	typeManaged = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	typeGrants4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeGrants6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

// objects are the kernel objects of the table. Set IDs only have to be
// unique within one batch; giving them here keeps the library's global
// counter out of the way.
type objects struct {
	table   *nftables.Table
	chain   *nftables.Chain
	managed *nftables.Set
	grants4 *nftables.Set
	grants6 *nftables.Set
}

func newObjects() objects {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	return objects{
		table: t,
		chain: &nftables.Chain{Name: chainName, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(Priority), Policy: &accept},
		managed: &nftables.Set{Table: t, ID: 1, Name: setPorts, KeyType: typeManaged, Concatenation: true},
		grants4: &nftables.Set{Table: t, ID: 2, Name: setV4, KeyType: typeGrants4, Concatenation: true, HasTimeout: true},
		grants6: &nftables.Set{Table: t, ID: 3, Name: setV6, KeyType: typeGrants6, Concatenation: true, HasTimeout: true},
	}
}

func (o objects) grantSet(a netip.Addr) *nftables.Set {
	if a.Unmap().Is4() {
		return o.grants4
	}
	return o.grants6
}

// Register numbers: 1 is the first 16-byte register (the same storage as the
// 4-byte register 8); a concatenation puts each field in the next 4-byte
// register(s), as nft does.
const (
	reg1    = 1
	reg32_0 = 8
)

// queueStructure adds the table, chain, sets and rules to the batch. Objects
// that already exist in a compatible shape are left as they are (no EXCL);
// the chain is flushed and its rules written again, so an agent upgrade
// replaces old rules in the same transaction.
func (o objects) queueStructure(c *nftables.Conn) error {
	c.AddTable(o.table)
	c.AddChain(o.chain)
	for _, s := range []*nftables.Set{o.managed, o.grants4, o.grants6} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	c.FlushChain(o.chain)
	for _, exprs := range o.rules() {
		c.AddRule(&nftables.Rule{Table: o.table, Chain: o.chain, Exprs: exprs})
	}
	return nil
}

func (o objects) rules() [][]expr.Any {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	lo := make([]byte, 16)
	copy(lo, "lo")
	l4 := func(protoReg, portReg uint32) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		}
	}
	v4 := append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
	}, l4(reg32_0+1, reg32_0+2)...)
	v4 = append(v4, &expr.Lookup{SourceRegister: reg1, SetName: o.grants4.Name, SetID: o.grants4.ID}, accept)
	v6 := append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
	}, l4(reg32_0+4, reg32_0+5)...)
	v6 = append(v6, &expr.Lookup{SourceRegister: reg1, SetName: o.grants6.Name, SetID: o.grants6.ID}, accept)
	drop := append(l4(reg1, reg32_0+1),
		&expr.Lookup{SourceRegister: reg1, SetName: o.managed.Name, SetID: o.managed.ID},
		&expr.Verdict{Kind: expr.VerdictDrop})
	return [][]expr.Any{
		{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: lo}, accept},
		{
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
			accept,
		},
		v4, v6, drop,
	}
}

// Keys: each field padded to 4 bytes, network byte order.
func portKey(p Port) []byte {
	return []byte{byte(p.Proto), 0, 0, 0, byte(p.Number >> 8), byte(p.Number), 0, 0}
}

func grantKey(a netip.Addr, p Port) []byte {
	a = a.Unmap()
	b := a.AsSlice()
	return append(b, portKey(p)...)
}

func decodePortKey(b []byte) (Port, error) {
	if len(b) != 8 {
		return Port{}, fmt.Errorf("managed set key of %d bytes", len(b))
	}
	return Port{Proto: Proto(b[0]), Number: uint16(b[4])<<8 | uint16(b[5])}, nil
}

func decodeGrantKey(b []byte) (netip.Addr, Port, error) {
	var n int
	switch len(b) {
	case 12:
		n = 4
	case 24:
		n = 16
	default:
		return netip.Addr{}, Port{}, fmt.Errorf("grant set key of %d bytes", len(b))
	}
	a, _ := netip.AddrFromSlice(b[:n])
	p, err := decodePortKey(b[n:])
	return a, p, err
}

func grantElement(g GrantRequest) nftables.SetElement {
	return nftables.SetElement{Key: grantKey(g.Source, g.Port), Timeout: g.Duration, Comment: g.ID}
}

// ErrUnavailable is returned when nftables cannot be used on this machine:
// a kernel without nf_tables, or an agent without CAP_NET_ADMIN. Nothing was
// changed.
var ErrUnavailable = errors.New("nftables is not available on this machine")

// ErrNotApplied is returned by Grant and Check when the table is missing
// (never applied, removed, or flushed by someone else) or by Grant before
// Apply or Restore.
var ErrNotApplied = errors.New("the JIT table is not in place")

// ErrRefused marks a request the policy refuses (port not managed, source
// outside the allowed ranges, duration over the maximum).
var ErrRefused = errors.New("refused by the JIT policy")

// classify turns the errno of a failed netlink call into an error saying what
// the machine lacks, wrapping ErrUnavailable when nftables cannot be used.
func classify(op string, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotApplied) {
		return err
	}
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s: %w: permission denied (the agent needs root or CAP_NET_ADMIN): %v", op, ErrUnavailable, err)
	case errors.Is(err, syscall.EPROTONOSUPPORT):
		return fmt.Errorf("%s: %w: the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK): %v", op, ErrUnavailable, err)
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EAFNOSUPPORT):
		return fmt.Errorf("%s: %w: the kernel has no nf_tables support for the inet family (module nf_tables not loadable?): %v", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
