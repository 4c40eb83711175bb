# boot-marker.ps1: the startup task (HarnessBootMarker, SYSTEM, at every boot).
#
# Writes to COM2 (and C:\harness\boot.log), in this order:
#   the driver's own word (lib.ps1 Get-DriverWord: the volatile values harnessflt.sys
#   writes under HKLM\SYSTEM\CurrentControlSet\Services\harnessflt\Parameters\State),
#   when `fltmc filters` lists harnessflt and the driver says Finished=1:
#     harness_sensor: <file>: loaded (reported by the driver)
#     harness_sensor: <file>: rejected: <text> [<reason>]
#     HARNESS-SENSOR-LOADED build=<b> files=F loaded=L rejected=R instances=I generation=G status=<s> source=driver
#   (the Windows family's healthy / content-rejected rules read these lines);
#   HARNESS-BOOT-ERROR sensor: ...  when the filter is listed but the driver wrote no
#       status or has not finished reading its content (waits up to 60 s for it);
#   HARNESS-SENSOR-SKIPPED build=<build> files=<F> source=fltmc
#       when harnessflt is not loaded (e.g. Safe Mode, if this task runs there);
#   HARNESS-BOOT-COMPLETE
#   HARNESS-SSH-HOSTKEY <type> <base64>
#                                the sshd host key (ssh_host_ed25519_key.pub), which
#                                the harness pins for this boot's SSH sessions
#   HARNESS-SSH-READY            once the sshd service runs (waits up to 120 s)
# A vendor's driver (image.json "driver".kind = vendor, docs/windows-vendor-driver.md) gets,
# instead of the sample's lines (the profile's ready:/rejected: regexes are matched against these):
#   HARNESS-DRIVER-STATE service=<S> state=<RUNNING|STOPPED|...|MISSING> start=<boot|system|...> win32_exit=<n> service_exit=<n> source=sc
#   HARNESS-DRIVER-FILTER service=<S> listed=yes instances=<n> altitude=<a> source=fltmc   (listed=no: not a loaded minifilter)
#   HARNESS-DRIVER-VALUE <S>[/<subkey>...] <Name>=<value>      one per value under its service key
#   HARNESS-DRIVER-VALUE <S>[/<subkey>...] <Name>[<i>]=<string> one per string of a REG_MULTI_SZ
#   HARNESS-DRIVER-DONE service=<S> state=<state> values=<n> files=<F> event=boot
# (the values once they stopped changing, read every 2 s for up to 60 s); when the service is
# not running: in Safe Mode HARNESS-SENSOR-SKIPPED service=<S> state=<state> source=sc, else
# HARNESS-BOOT-ERROR driver: <S> is not running (...).
# During the golden-image build only (C:\harness\verify-pending exists, left by
# setup.ps1): the driver must be loaded (the sample: and have finished), then
# HARNESS-IMAGE-READY and a shutdown; otherwise HARNESS-SETUP-ERROR verify: ... and the
# machine stays up.

. (Join-Path $PSScriptRoot 'lib.ps1')

function Write-Boot([string]$Line) { Write-HarnessLine -Line $Line -LogName 'boot.log' }

$driver = Get-ImageDriver
$verifyError = $null
if ($driver.Kind -eq 'vendor') {
    $result = Get-VendorDriverLines -Service $driver.Service -ContentDir $driver.ContentDir -Event 'boot'
    $running = $result.State.State -eq 'RUNNING'
    if (-not $running -and (Test-SafeMode)) {
        Write-Boot "HARNESS-SENSOR-SKIPPED service=$($driver.Service) state=$($result.State.State) source=sc"
    } else {
        foreach ($line in $result.Lines) { Write-Boot $line }
        if (-not $running) {
            Write-Boot "HARNESS-BOOT-ERROR driver: $($driver.Service) is not running (state=$($result.State.State) win32_exit=$($result.State.Win32Exit); 577: its signature was refused, 2: its image is missing; see the System event log)"
        }
    }
    if (-not $running) {
        $verifyError = "$($driver.Service) is not running after the reboot (state=$($result.State.State) win32_exit=$($result.State.Win32Exit): test signing off, Secure Boot on, an untrusted signature, or the driver failed to load: see the System event log)"
    }
    $verifyOk = "$($driver.Service) running at boot (state=$($result.State.State))"
} else {
    $state = Get-SensorState
    if ($state.Loaded) {
        # The content is read at boot-driver reinitialization, long before this task
        # runs; the wait covers a driver started late (or a slow disk).
        $word = Get-DriverWord
        $wordDeadline = (Get-Date).AddSeconds(60)
        while (($null -eq $word -or $word.Finished -ne 1) -and (Get-Date) -lt $wordDeadline) {
            Start-Sleep -Seconds 2
            $word = Get-DriverWord
        }
        foreach ($line in (Get-DriverWordLines -Word $word -Listed $true)) { Write-Boot $line }
    } else {
        Write-Boot "HARNESS-SENSOR-SKIPPED build=$($state.Build) files=$($state.Files) source=fltmc"
    }
    if (-not $state.Loaded) {
        $verifyError = 'harnessflt is not in fltmc filters after the reboot (test signing off, Secure Boot on, or the driver failed to load: see System event log)'
    } elseif ($null -eq $word -or $word.Finished -ne 1) {
        $verifyError = 'harnessflt is loaded but did not report finishing its content load (Parameters\State)'
    } else {
        $verifyOk = "harnessflt loaded at boot (status=$($word.Status))"
    }
}
Write-Boot 'HARNESS-BOOT-COMPLETE'

$deadline = (Get-Date).AddSeconds(120)
while ((Get-Date) -lt $deadline) {
    $sshd = Get-Service -Name sshd -ErrorAction SilentlyContinue
    if ($null -ne $sshd -and $sshd.Status -eq 'Running') {
        $hostKey = Join-Path $env:ProgramData 'ssh\ssh_host_ed25519_key.pub'
        if (Test-Path -LiteralPath $hostKey) {
            $parts = (Get-Content -LiteralPath $hostKey -TotalCount 1).Split(' ')
            Write-Boot "HARNESS-SSH-HOSTKEY $($parts[0]) $($parts[1])"
        }
        Write-Boot 'HARNESS-SSH-READY'
        break
    }
    Start-Sleep -Seconds 2
}

$pending = Join-Path $HarnessDir 'verify-pending'
if (Test-Path -LiteralPath $pending) {
    if ($null -ne $verifyError) {
        Write-HarnessLine -Line "HARNESS-SETUP-ERROR verify: $verifyError"
        exit 1
    }
    Remove-Item -LiteralPath $pending -Force
    Write-HarnessLine -Line "HARNESS-SETUP verify ok: $verifyOk"
    Write-HarnessLine -Line 'HARNESS-IMAGE-READY'
    Stop-Computer -Force
}
