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
# During the golden-image build only (C:\harness\verify-pending exists, left by
# setup.ps1): the sensor must be loaded and have finished, then HARNESS-IMAGE-READY
# and a shutdown; otherwise HARNESS-SETUP-ERROR verify: ... and the machine stays up.

. (Join-Path $PSScriptRoot 'lib.ps1')

function Write-Boot([string]$Line) { Write-HarnessLine -Line $Line -LogName 'boot.log' }

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
    if (-not $state.Loaded) {
        Write-HarnessLine -Line 'HARNESS-SETUP-ERROR verify: harnessflt is not in fltmc filters after the reboot (test signing off, Secure Boot on, or the driver failed to load: see System event log)'
        exit 1
    }
    if ($null -eq $word -or $word.Finished -ne 1) {
        Write-HarnessLine -Line 'HARNESS-SETUP-ERROR verify: harnessflt is loaded but did not report finishing its content load (Parameters\State)'
        exit 1
    }
    Remove-Item -LiteralPath $pending -Force
    Write-HarnessLine -Line "HARNESS-SETUP verify ok: harnessflt loaded at boot (status=$($word.Status))"
    Write-HarnessLine -Line 'HARNESS-IMAGE-READY'
    Stop-Computer -Force
}
