package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"
)

// lieAboutCertificate, for TESTPLUGIN_LIE_CERT, makes go-plugin's handshake
// line carry another certificate than the one the plugin's TLS server
// presents: the host, which pins the line's certificate, must refuse the
// connection.
func lieAboutCertificate() {
	other, err := otherCertificate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "TESTPLUGIN_LIE_CERT:", err)
		os.Exit(1)
	}
	stdout := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "TESTPLUGIN_LIE_CERT:", err)
		os.Exit(1)
	}
	os.Stdout = w
	go func() {
		br := bufio.NewReader(r)
		line, _ := br.ReadString('\n')
		fields := strings.Split(strings.TrimSuffix(line, "\n"), "|")
		if len(fields) >= 6 {
			fields[5] = other
		}
		fmt.Fprintln(stdout, strings.Join(fields, "|"))
		_, _ = io.Copy(stdout, br)
	}()
}

// otherCertificate is a self-signed certificate for localhost, as go-plugin
// makes one, base64-encoded as in the handshake line.
func otherCertificate() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	template := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(der), nil
}
