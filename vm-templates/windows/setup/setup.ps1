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
Write-SetupLog "start edition=$($Config.edition) sensor=$($Config.sensor_build) medium=$Medium"

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

Invoke-Step 'certificate' {
    $cer = Join-Path $HarnessDir 'harness-test-signing.cer'
    Import-Certificate -FilePath $cer -CertStoreLocation 'Cert:\LocalMachine\Root' | Out-Null
    Import-Certificate -FilePath $cer -CertStoreLocation 'Cert:\LocalMachine\TrustedPublisher' | Out-Null
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

# The sample sensor, installed through its INF (drivers/windows/harnessflt.inf, a
# primitive driver package: DIRID 13, PnpLockdown): pnputil /add-driver ... /install
# stages the package in the driver store and runs [DefaultInstall.NTamd64] and its
# .Services section (DiInstallDriver), which create the boot-start service and its
# instance values. A package needs a catalog signed by a trusted publisher; nothing on
# the Linux host writes a .cat, so this step makes one over the package folder
# (New-FileCatalog, SHA256) and signs it (Set-AuthenticodeSignature) with a
# code-signing certificate made on this VM and trusted here as a root and a publisher
# (so pnputil does not ask), unless the medium brings harnessflt.cat (made with inf2cat
# + signtool on a WDK machine). The driver image keeps its own embedded signature (the
# test certificate, trusted by the step 'certificate'), which a boot-start driver needs.
# pnputil exits 3010 when it wants a reboot: the driver loads at the next boot anyway.
# drivers/windows/README.md "Installing on a test VM".
Invoke-Step 'sensor' {
    $drivers = Join-Path $env:SystemRoot 'System32\drivers'
    New-Item -ItemType Directory -Path (Join-Path $drivers 'HarnessSensor') -Force | Out-Null
    $package = Join-Path $HarnessDir 'package'
    New-Item -ItemType Directory -Path $package -Force | Out-Null
    foreach ($file in @('harnessflt.sys', 'harnessflt.inf')) {
        Copy-Item -LiteralPath (Join-Path $HarnessDir $file) -Destination (Join-Path $package $file) -Force
    }
    $catalog = Join-Path $package 'harnessflt.cat'
    $given = Join-Path $HarnessDir 'harnessflt.cat'
    if (Test-Path -LiteralPath $given) {
        Copy-Item -LiteralPath $given -Destination $catalog -Force
        Write-SetupLog 'sensor: harnessflt.cat from the medium'
    } else {
        # Made outside the folder it lists, then moved in: a catalog does not list itself.
        $made = Join-Path $env:TEMP 'harnessflt.cat'
        New-FileCatalog -Path $package -CatalogFilePath $made -CatalogVersion 2.0 | Out-Null
        Move-Item -LiteralPath $made -Destination $catalog -Force
        # The catalog's signer need not be the driver's: a code-signing certificate made
        # here (its private key never leaves this VM, none travels on the medium), trusted
        # as a root and a publisher of this machine only.
        $cert = New-SelfSignedCertificate -Type CodeSigningCert -Subject 'CN=Harness Sensor Package (this VM only)' `
            -CertStoreLocation 'Cert:\LocalMachine\My' -HashAlgorithm SHA256 -KeyExportPolicy NonExportable `
            -NotAfter (Get-Date).AddYears(10)
        foreach ($storeName in @('Root', 'TrustedPublisher')) {
            $store = New-Object System.Security.Cryptography.X509Certificates.X509Store $storeName, 'LocalMachine'
            $store.Open('ReadWrite')
            $store.Add($cert)
            $store.Close()
        }
        $signature = Set-AuthenticodeSignature -FilePath $catalog -Certificate $cert -HashAlgorithm SHA256
        if ($signature.Status -ne 'Valid') { throw "signing $catalog`: $($signature.Status) $($signature.StatusMessage)" }
        Write-SetupLog "sensor: harnessflt.cat made (New-FileCatalog) and signed by $($cert.Subject)"
    }
    $output = & pnputil.exe /add-driver (Join-Path $package 'harnessflt.inf') /install 2>&1 | Out-String
    if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 3010) {
        throw "pnputil.exe /add-driver harnessflt.inf /install exited with $LASTEXITCODE`: $($output.Trim())"
    }
    $service = Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services\harnessflt' -ErrorAction SilentlyContinue
    if ($null -eq $service -or $service.Start -ne 0) {
        throw "pnputil added the package but the harnessflt service is missing or not boot-start: $($output.Trim())"
    }
    Write-SetupLog "sensor: installed through harnessflt.inf (pnputil exit $LASTEXITCODE), ImagePath=$($service.ImagePath)"
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
    Write-SetupLog 'done: rebooting once to verify the sensor loads (then HARNESS-IMAGE-READY)'
    Restart-Computer -Force
}
