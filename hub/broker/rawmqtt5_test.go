package broker_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
)

// A minimal MQTT 5 client for what paho (MQTT 3.1.1) cannot send: a
// delayed will and topic aliases. Just enough of the encoding for CONNECT
// and PUBLISH; it reads the CONNACK and ignores everything after it.

type rawWill struct {
	topic   string
	payload []byte
	qos     byte
	delay   uint32 // will delay interval, seconds
}

type raw5 struct{ c net.Conn }

func (r *raw5) close() { r.c.Close() }

func mqttStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func varint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func packet(typ byte, body []byte) []byte { return append(varint([]byte{typ}, len(body)), body...) }

// rawConnect5 logs in as gate g with MQTT 5 and returns once the CONNACK
// is a success; a refusal is an error carrying the reason code.
func rawConnect5(addr string, g ingesttest.Gate, w *rawWill) (*raw5, error) {
	flags := byte(0x80 | 0x40 | 0x02) // username, password, clean start
	if w != nil {
		flags |= 0x04 | w.qos<<3
	}
	body := mqttStr(nil, "MQTT")
	body = append(body, 5, flags, 0, 30, 0) // version, flags, keepalive 30 s, no properties
	body = mqttStr(body, g.ID)
	if w != nil {
		props := binary.BigEndian.AppendUint32([]byte{0x18}, w.delay) // will delay interval
		body = append(varint(body, len(props)), props...)
		body = mqttStr(body, w.topic)
		body = mqttStr(body, string(w.payload))
	}
	body = mqttStr(body, g.Username)
	body = mqttStr(body, g.Password)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(packet(0x10, body)); err != nil {
		c.Close()
		return nil, err
	}
	rd := bufio.NewReader(c)
	hdr := make([]byte, 4) // type, length (< 128), flags, reason
	if _, err := rd.Read(hdr[:1]); err != nil {
		c.Close()
		return nil, fmt.Errorf("no CONNACK: %w", err)
	}
	if _, err := readFull(rd, hdr[1:]); err != nil || hdr[0] != 0x20 {
		c.Close()
		return nil, fmt.Errorf("no CONNACK (%#x): %v", hdr[0], err)
	}
	if hdr[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK reason %#x", hdr[3])
	}
	c.SetDeadline(time.Time{})
	go func() { // drain whatever the broker sends
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return &raw5{c: c}, nil
}

func readFull(rd *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := rd.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// publish sends a QoS 1 PUBLISH with a topic alias (topic may be empty).
func (r *raw5) publish(topic string, alias uint16, id uint16, payload []byte) {
	body := mqttStr(nil, topic)
	body = binary.BigEndian.AppendUint16(body, id)
	props := binary.BigEndian.AppendUint16([]byte{0x23}, alias)
	body = append(varint(body, len(props)), props...)
	body = append(body, payload...)
	r.c.Write(packet(0x32, body))
}
