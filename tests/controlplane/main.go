// Command controlplane is a multi-call binary holding every Kubernetes part of the
// one-node cluster that raft-injector's tests and demo run on, all from one pin:
//
//	controlplane etcd [etcd flags]                  (the real etcd server, also used as a Raft test subject)
//	controlplane kube-apiserver [flags]
//	controlplane kube-controller-manager [flags]
//	controlplane kube-scheduler [flags]
//	controlplane kubelet [flags]                    (the node; containers run in containerd)
//	controlplane kube-proxy [flags]                 (Service IPs, in iptables mode)
//	controlplane kubectl [args]                     (for machines without a kubectl of their own)
//	controlplane cri-reset ENDPOINT                 (stops and removes every pod sandbox, through CRI)
//
// run.sh starts each as its own process, the way a cluster runs them, so they
// never share global state such as metric registries or flag sets.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/component-base/cli"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl|cri-reset [flags]")
		os.Exit(2)
	}
	role, args := os.Args[1], os.Args[2:]
	switch role {
	case "etcd":
		// etcdmain reads flags after the program name, and ETCD_* env vars.
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		os.Exit(runCommand(apiserver.NewAPIServerCommand(), args))
	case "kube-controller-manager":
		os.Exit(runCommand(controllermanager.NewControllerManagerCommand(), args))
	case "kube-scheduler":
		os.Exit(runCommand(scheduler.NewSchedulerCommand(), args))
	case "kubelet":
		os.Exit(runCommand(kubelet.NewKubeletCommand(), args))
	case "kube-proxy":
		os.Exit(runCommand(proxy.NewProxyCommand(), args))
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
	case "cri-reset":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: controlplane cri-reset unix:///path/to/containerd.sock")
			os.Exit(2)
		}
		if err := criReset(args[0]); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: %v\n", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown role %q\n", role)
		os.Exit(2)
	}
}

func runCommand(cmd *cobra.Command, args []string) int {
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

// criReset tears every pod sandbox down the way kubelet would: StopPodSandbox runs the
// CNI DEL (IP released, veth and netns removed), RemovePodSandbox removes its containers.
// run.sh down calls it after kubelet has stopped, so nothing restarts them.
func criReset(endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := klog.Background()
	runtime, err := remote.NewRemoteRuntimeService(endpoint, 10*time.Second, nil, &logger)
	if err != nil {
		return err
	}
	sandboxes, err := runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		return fmt.Errorf("listing pod sandboxes: %w", err)
	}
	var failed []error
	for _, sandbox := range sandboxes {
		name := sandbox.GetMetadata().GetNamespace() + "/" + sandbox.GetMetadata().GetName()
		if err := runtime.StopPodSandbox(ctx, sandbox.Id); err != nil {
			failed = append(failed, fmt.Errorf("stopping %s: %w", name, err))
			continue
		}
		if err := runtime.RemovePodSandbox(ctx, sandbox.Id); err != nil {
			failed = append(failed, fmt.Errorf("removing %s: %w", name, err))
		}
	}
	return errors.Join(failed...)
}
