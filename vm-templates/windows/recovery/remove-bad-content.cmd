@echo off
rem remove-bad-content.cmd: the sample recovery script for Windows (WinPE / WinRE,
rem and Safe Mode through safe-mode.ps1). The Windows twin of
rem vm-templates/linux/recovery/remove-bad-content.sh.
rem
rem Reads %HARNESS_BAD_FILES% (lines "<sha256 hex>  <file name>") and deletes each
rem named file from %HARNESS_CONTENT_DIR% whose SHA-256 matches; a file whose hash
rem differs is kept. Without certutil (not in every WinPE image) the hash cannot be
rem checked: the file is deleted by name and the line says so.
rem Exit code: 0, or 1 when a delete failed or the list is missing.
setlocal EnableExtensions DisableDelayedExpansion
set "FAILED=0"
if not exist "%HARNESS_BAD_FILES%" (
  echo bad-files list %HARNESS_BAD_FILES% not found
  exit /b 1
)
set "CERTUTIL="
where certutil >nul 2>&1 && set "CERTUTIL=1"
for /f "usebackq tokens=1,2" %%A in ("%HARNESS_BAD_FILES%") do call :one %%A %%B
exit /b %FAILED%

:one
set "WANT=%~1"
set "NAME=%~2"
set "F=%HARNESS_CONTENT_DIR%\%NAME%"
if not exist "%F%" (
  echo %NAME%: not present
  exit /b 0
)
if not defined CERTUTIL goto :delete_unchecked
set "GOT="
for /f "skip=1 delims=" %%H in ('certutil -hashfile "%F%" SHA256') do if not defined GOT set "GOT=%%H"
if defined GOT set "GOT=%GOT: =%"
if /i "%GOT%"=="%WANT%" goto :delete
echo %NAME%: kept (its SHA-256 is not the bad update's)
exit /b 0

:delete_unchecked
echo %NAME%: no certutil here, deleting by name without checking the SHA-256
:delete
del /f /q "%F%" >nul 2>&1
if exist "%F%" (
  echo %NAME%: delete failed
  set "FAILED=1"
  exit /b 0
)
echo %NAME%: deleted
exit /b 0
