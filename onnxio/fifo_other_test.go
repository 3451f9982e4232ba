//go:build !unix

package onnxio

import "errors"

func mkfifo(path string) error { return errors.New("no FIFOs on this system") }
