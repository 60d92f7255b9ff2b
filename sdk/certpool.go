package sdk

import (
	"crypto/x509"
	"os"
)

// CertPool reads the certificate authorities a plugin is told to trust for
// an upstream it calls over TLS: PEM certificates given inline at dataKey or
// in the file named at fileKey, conventionally "caData" and "caFile":
//
//	pool, err := cfg.CertPool("caData", "caFile")
//	if err != nil {
//		return err // names caData or caFile
//	}
//	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
//
// It returns nil when neither key is set (or both are empty), which as
// tls.Config.RootCAs means the system's roots. Otherwise the pool holds only
// the given certificates: they replace the system's roots, they are not
// added to them. Pass "" as either key when the block offers only the other.
//
// Errors are *ConfigError values naming the offending key: both keys set
// (fileKey is named), a value that is not a string, a file that cannot be
// read, or PEM that holds no certificate.
func (o Options) CertPool(dataKey, fileKey string) (*x509.CertPool, error) {
	var data, file string
	var err error
	if dataKey != "" {
		if data, err = o.StringOr(dataKey, ""); err != nil {
			return nil, err
		}
	}
	if fileKey != "" {
		if file, err = o.StringOr(fileKey, ""); err != nil {
			return nil, err
		}
	}
	switch {
	case data != "" && file != "":
		return nil, ConfigErrorf(fileKey, "set %s or %s, not both", dataKey, fileKey)
	case data != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(data)) {
			return nil, ConfigErrorf(dataKey, "holds no PEM certificate")
		}
		return pool, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, ConfigErrorf(fileKey, "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, ConfigErrorf(fileKey, "%s holds no PEM certificate", file)
		}
		return pool, nil
	}
	return nil, nil
}
