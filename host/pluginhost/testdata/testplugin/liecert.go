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

	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// lieAboutCertificate, for TESTPLUGIN_LIE_CERT, rewrites how the plugin
// announces its TLS certificate on stdout (the certificate line of the SDK,
// or go-plugin's handshake line when there is none): the host must refuse
// each of these.
//
//	other      another certificate than the one the TLS server presents
//	malformed  a certificate line that is not base64
//	both       the certificate line's certificate in the handshake line too
//	none       no certificate line (and none in the handshake line)
//	twice      the certificate line twice
func lieAboutCertificate(how string) {
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
		line = strings.TrimSuffix(line, "\n")
		var announced string
		if cert, ok := strings.CutPrefix(line, pluginclient.CertLinePrefix); ok {
			announced = cert
			switch how {
			case "other":
				fmt.Fprintln(stdout, pluginclient.CertLinePrefix+other)
			case "malformed":
				fmt.Fprintln(stdout, pluginclient.CertLinePrefix+"%%not base64%%")
			case "both":
				fmt.Fprintln(stdout, line)
			case "twice":
				fmt.Fprintln(stdout, line)
				fmt.Fprintln(stdout, line)
			}
			line, _ = br.ReadString('\n')
			line = strings.TrimSuffix(line, "\n")
		}
		fields := strings.Split(line, "|")
		if len(fields) >= 6 {
			switch {
			case how == "both":
				fields[5] = announced
			case how == "other" && announced == "":
				fields[5] = other
			case how == "none":
				fields[5] = ""
			}
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
