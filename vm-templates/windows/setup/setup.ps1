# setup.ps1: the golden image's first-logon setup (FirstLogonCommands, as the
# local administrator the answer file creates). Run from the answer medium:
#   powershell.exe -NoProfile -ExecutionPolicy Bypass -File <medium>\harness\setup.ps1 -Medium <medium>
#
# Each step logs "HARNESS-SETUP step <name>" and "... ok" to C:\harness\setup.log
# and COM2; the first error stops the setup with
#   HARNESS-SETUP-ERROR <step>: <message>
# on COM2 (the host fails the build at once). At the end the machine reboots
# once: the startup task (boot-marker.ps1) checks that the sensor loaded with
# test signing on, writes HARNESS-IMAGE-READY and shuts the machine down.
# References: shared design notes windows-notes.md sections 2.1 (EMS), 2.5 and 3
# (CrashControl), 5 (WinRE, Fast Startup), 6.2-6.3 (sensor, test signing), 7 (OpenSSH);
# drivers/windows/README.md "Installing on a test VM" (through the INF, pnputil).

param([Parameter(Mandatory = $true)][string]$Medium)

$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'lib.ps1')

$Source = Join-Path $Medium 'harness'
$Config = Get-Content -LiteralPath (Join-Path $Source 'image.json') -Raw | ConvertFrom-Json
Write-SetupLog "start edition=$($Config.edition) sensor=$($Config.sensor_build) driver=$($Config.driver.kind):$($Config.driver.service) medium=$Medium"

Invoke-Step 'copy' {
    New-Item -ItemType Directory -Path $HarnessDir -Force | Out-Null
    Copy-Item -Path (Join-Path $Source '*') -Destination $HarnessDir -Recurse -Force
    Set-Content -LiteralPath (Join-Path $HarnessDir 'sensor-build.txt') -Value $Config.sensor_build -Encoding ASCII
}

# EMS/SAC on COM1 at 115200 (QEMU has no ACPI SPCR table: give the port), boot
# manager output too. windows-notes 2.1.
Invoke-Step 'ems' {
    Invoke-Native 'bcdedit.exe' @('/ems', '{current}', 'on') | Out-Null
    Invoke-Native 'bcdedit.exe' @('/emssettings', 'EMSPORT:1', 'EMSBAUDRATE:115200') | Out-Null
    Invoke-Native 'bcdedit.exe' @('/bootems', '{bootmgr}', 'on') | Out-Null
}

# The SAC console on COM1 for people who want it. Windows 10/11 (client editions,
# ProductType 1) ship SAC as an optional capability that is not installed;
# Windows Server has it inbox. The harness never needs it: boots are counted from
# libvirt's events and the firmware's lines (harness/families/windows.py), so a
# capability that cannot be installed (no Windows Update, no FoD source) is logged
# and setup goes on.
Invoke-Step 'sac' {
    $productType = (Get-CimInstance -ClassName Win32_OperatingSystem).ProductType
    if ($productType -ne 1) {
        Write-SetupLog "sac: ProductType $productType (server): SAC is inbox, nothing to add"
    } else {
        try {
            $sac = Get-WindowsCapability -Online -Name 'Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0'
            if ($null -ne $sac -and $sac.State -eq 'Installed') {
                Write-SetupLog 'sac: Windows.Desktop.EMS-SAC.Tools already installed'
            } else {
                Add-WindowsCapability -Online -Name 'Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0' | Out-Null
                Write-SetupLog 'sac: Windows.Desktop.EMS-SAC.Tools installed (active after the reboot)'
            }
        } catch {
            $reason = ($_.Exception.Message -replace '\s+', ' ').Trim()
            Write-SetupLog "sac: not installed, the console stays without SAC ($reason)"
        }
    }
}

# Test-signed boot-start drivers load only with TESTSIGNING on and Secure Boot off
# (the domain's OVMF has Secure Boot off). windows-notes 6.3.
Invoke-Step 'testsigning' {
    Invoke-Native 'bcdedit.exe' @('/set', 'testsigning', 'on') | Out-Null
}

# The certificate the driver image is test-signed with (image.json driver.certificate: the
# harness's test certificate for the sample, a vendor's own `cert:`), trusted as a root and a
# publisher. A vendor driver without one must be signed by a certificate Windows trusts already.
Invoke-Step 'certificate' {
    $certificate = (Get-ImageDriver).Certificate
    if (-not $certificate) {
        Write-SetupLog 'certificate: none given with the driver: its signature must chain to a root this Windows trusts'
    } else {
        $cer = Join-Path $HarnessDir $certificate
        Import-Certificate -FilePath $cer -CertStoreLocation 'Cert:\LocalMachine\Root' | Out-Null
        Import-Certificate -FilePath $cer -CertStoreLocation 'Cert:\LocalMachine\TrustedPublisher' | Out-Null
    }
}

# CrashControl (windows-notes 2.5, 3): restart after a bugcheck (the boot loop the
# harness counts), a kernel memory dump kept even when disk space is low, a dump
# on NMI (virsh inject-nmi), no emoticon on the stop screen.
Invoke-Step 'crashcontrol' {
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
    Set-ItemProperty -Path $key -Name AutoReboot -Type DWord -Value 1
    Set-ItemProperty -Path $key -Name CrashDumpEnabled -Type DWord -Value 2
    Set-ItemProperty -Path $key -Name AlwaysKeepMemoryDump -Type DWord -Value 1
    Set-ItemProperty -Path $key -Name NMICrashDump -Type DWord -Value 1
    Set-ItemProperty -Path $key -Name DisableEmoticon -Type DWord -Value 1
}

Invoke-Step 'winre' {
    $info = & reagentc.exe /info 2>&1 | Out-String
    if ($info -notmatch 'Enabled') {
        Invoke-Native 'reagentc.exe' @('/enable') | Out-Null
    }
}

# No Fast Startup, no hibernation file: ntfs-3g/libguestfs refuse to write a
# hibernated volume (windows-notes 5).
Invoke-Step 'faststartup' {
    Set-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Power' -Name HiberbootEnabled -Type DWord -Value 0
    Invoke-Native 'powercfg.exe' @('/h', 'off') | Out-Null
}

# OpenSSH Server (a Feature on Demand: Windows Update must be reachable), key-only
# login for the administrator: administrators_authorized_keys with the ACL
# Microsoft documents (Administrators and SYSTEM, full control, no inheritance).
Invoke-Step 'openssh' {
    $cap = Get-WindowsCapability -Online -Name 'OpenSSH.Server*' | Select-Object -First 1
    if ($null -eq $cap) { throw 'no OpenSSH.Server capability on this Windows' }
    if ($cap.State -ne 'Installed') {
        Add-WindowsCapability -Online -Name $cap.Name | Out-Null
    }
    Set-Service -Name sshd -StartupType Automatic
    Start-Service -Name sshd
    $keys = Join-Path $env:ProgramData 'ssh\administrators_authorized_keys'
    Copy-Item -LiteralPath (Join-Path $HarnessDir 'administrators_authorized_keys') -Destination $keys -Force
    Invoke-Native 'icacls.exe' @($keys, '/inheritance:r', '/grant', '*S-1-5-32-544:F', '/grant', '*S-1-5-18:F') | Out-Null
    if (-not (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction SilentlyContinue)) {
        New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName 'OpenSSH Server (sshd)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22 | Out-Null
    }
}

# virtio-win guest tools (QEMU guest agent, pvpanic, fwcfg for win-dmp dumps), when
# the virtio-win ISO carries the installer.
Invoke-Step 'guest-tools' {
    $installer = $null
    foreach ($drive in [System.IO.DriveInfo]::GetDrives()) {
        $candidate = Join-Path $drive.Name 'virtio-win-guest-tools.exe'
        if (Test-Path -LiteralPath $candidate) { $installer = $candidate; break }
    }
    if ($null -eq $installer) {
        Write-SetupLog 'guest-tools: virtio-win-guest-tools.exe not found on any drive, skipped'
    } else {
        $proc = Start-Process -FilePath $installer -ArgumentList '/install', '/norestart', '/quiet' -Wait -PassThru
        if ($proc.ExitCode -ne 0 -and $proc.ExitCode -ne 3010) { throw "$installer exited with $($proc.ExitCode)" }
    }
}

# The image's driver, installed through its INF: the sample sensor (drivers/windows/harnessflt.inf)
# or the profile's vendor driver (docs/windows-vendor-driver.md), never both. install-driver.ps1
# is rendered for this image by harness/windows/package.py from install-driver.ps1.j2: it
# creates the driver's content directory, puts the INF, the .sys and the catalog (the one
# shipped, or one made and signed here) in a package folder and runs
# pnputil /add-driver <inf> /install, then checks the service the INF created.
Invoke-Step 'driver' {
    & (Join-Path $HarnessDir 'install-driver.ps1')
}

Invoke-Step 'boot-task' {
    $action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument "-NoProfile -ExecutionPolicy Bypass -File $HarnessDir\boot-marker.ps1"
    $trigger = New-ScheduledTaskTrigger -AtStartup
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit (New-TimeSpan -Minutes 10)
    Register-ScheduledTask -TaskName 'HarnessBootMarker' -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Force | Out-Null
}

# No password left behind: Setup masks it in its cached answer file, and the
# one automatic logon is over.
Invoke-Step 'cleanup' {
    foreach ($file in @("$env:SystemRoot\Panther\unattend.xml", "$env:SystemRoot\Panther\Unattend\unattend.xml")) {
        if (Test-Path -LiteralPath $file) { Remove-Item -LiteralPath $file -Force }
    }
    $winlogon = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon'
    Set-ItemProperty -Path $winlogon -Name AutoAdminLogon -Value '0'
    Remove-ItemProperty -Path $winlogon -Name DefaultPassword -ErrorAction SilentlyContinue
}

Invoke-Step 'reboot' {
    New-Item -ItemType File -Path (Join-Path $HarnessDir 'verify-pending') -Force | Out-Null
    Write-SetupLog 'done: rebooting once to verify the driver loads (then HARNESS-IMAGE-READY)'
    Restart-Computer -Force
}
