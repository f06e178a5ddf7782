// Command controlplane is a multi-call binary holding the three parts of the
// local Kubernetes control plane that raft-injector's tests run against:
//
//	controlplane etcd [etcd flags]                  (the real etcd server, also used as a Raft test subject)
//	controlplane kube-apiserver [flags]
//	controlplane kube-controller-manager [flags]
//	controlplane kubectl [args]                     (for machines without a kubectl of their own)
//
// run.sh starts each as its own process, the way a cluster runs them, so they
// never share global state such as metric registries or flag sets.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kubectl [flags]")
		os.Exit(2)
	}
	role, args := os.Args[1], os.Args[2:]
	switch role {
	case "etcd":
		// etcdmain reads flags after the program name, and ETCD_* env vars.
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kubectl":
		streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
		cmd := kubectl.NewDefaultKubectlCommandWithArgs(kubectl.KubectlOptions{
			Arguments:   append([]string{"kubectl"}, args...),
			ConfigFlags: genericclioptions.NewConfigFlags(true).WithWarningPrinter(streams),
			IOStreams:   streams,
		})
		cmd.SetArgs(args)
		if err := cli.RunNoErrOutput(cmd); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown role %q\n", role)
		os.Exit(2)
	}
}
