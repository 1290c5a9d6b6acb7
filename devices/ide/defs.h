// devices/ide/defs.h — ATA/ATAPI register bits, command opcodes, SCSI/MMC
// sense codes and bus-master bits used by the IDE model (values from the
// ATA/ATAPI-6 and ACS-2 drafts, MMC-3, SPC-3 and the PIIX3 datasheet).
#pragma once

#include <cstddef>
#include <cstdint>

namespace emu::devices::ide {

// Status register.
inline constexpr uint8_t kBsy = 0x80, kDrdy = 0x40, kDf = 0x20, kDsc = 0x10, kDrq = 0x08, kErr = 0x01;
// Error register.
inline constexpr uint8_t kUnc = 0x40, kIdnf = 0x10, kAbrt = 0x04;
// Device control register.
inline constexpr uint8_t kNien = 0x02, kSrst = 0x04, kHob = 0x80;
// Device register.
inline constexpr uint8_t kDev = 0x10, kLbaMode = 0x40, kObsoleteBits = 0xa0;
// ATAPI interrupt reason (Sector Count register).
inline constexpr uint8_t kReasonCoD = 0x01, kReasonIo = 0x02;

// Bus master registers (per channel, 8 bytes apart in BAR4).
inline constexpr uint8_t kBmStart = 0x01, kBmToMemory = 0x08;
inline constexpr uint8_t kBmActive = 0x01, kBmError = 0x02, kBmInterrupt = 0x04, kBmDmaCapable = 0x60;

// ATA opcodes.
enum : uint8_t {
    kCmdNop = 0x00,
    kCmdDataSetManagement = 0x06,
    kCmdDeviceReset = 0x08,
    kCmdRecalibrate = 0x10, // 0x10-0x1f
    kCmdReadSectors = 0x20,
    kCmdReadSectorsNoRetry = 0x21,
    kCmdReadSectorsExt = 0x24,
    kCmdReadDmaExt = 0x25,
    kCmdReadMultipleExt = 0x29,
    kCmdWriteSectors = 0x30,
    kCmdWriteSectorsNoRetry = 0x31,
    kCmdWriteSectorsExt = 0x34,
    kCmdWriteDmaExt = 0x35,
    kCmdWriteMultipleExt = 0x39,
    kCmdReadVerify = 0x40,
    kCmdReadVerifyNoRetry = 0x41,
    kCmdReadVerifyExt = 0x42,
    kCmdSeek = 0x70,
    kCmdExecuteDiagnostic = 0x90,
    kCmdInitializeParameters = 0x91,
    kCmdPacket = 0xa0,
    kCmdIdentifyPacket = 0xa1,
    kCmdReadMultiple = 0xc4,
    kCmdWriteMultiple = 0xc5,
    kCmdSetMultiple = 0xc6,
    kCmdReadDma = 0xc8,
    kCmdReadDmaNoRetry = 0xc9,
    kCmdWriteDma = 0xca,
    kCmdWriteDmaNoRetry = 0xcb,
    kCmdStandbyImmediate = 0xe0,
    kCmdIdleImmediate = 0xe1,
    kCmdStandby = 0xe2,
    kCmdIdle = 0xe3,
    kCmdCheckPowerMode = 0xe5,
    kCmdSleep = 0xe6,
    kCmdFlushCache = 0xe7,
    kCmdFlushCacheExt = 0xea,
    kCmdIdentify = 0xec,
    kCmdSetFeatures = 0xef,
};

// SET FEATURES subcommands.
enum : uint8_t {
    kFeatureEnableWriteCache = 0x02,
    kFeatureTransferMode = 0x03,
    kFeatureDisableLookAhead = 0x55,
    kFeatureRevertDefaults = 0x66,
    kFeatureDisableWriteCache = 0x82,
    kFeatureEnableLookAhead = 0xaa,
    kFeatureKeepSettings = 0xcc,
};

// SCSI/MMC operation codes.
enum : uint8_t {
    kScsiTestUnitReady = 0x00,
    kScsiRequestSense = 0x03,
    kScsiInquiry = 0x12,
    kScsiStartStopUnit = 0x1b,
    kScsiPreventAllow = 0x1e,
    kScsiReadCapacity = 0x25,
    kScsiRead10 = 0x28,
    kScsiSeek10 = 0x2b,
    kScsiReadToc = 0x43,
    kScsiGetConfiguration = 0x46,
    kScsiGetEventStatus = 0x4a,
    kScsiReadDiscInfo = 0x51,
    kScsiModeSense10 = 0x5a,
    kScsiRead12 = 0xa8,
    kScsiSetCdSpeed = 0xbb,
    kScsiMechanismStatus = 0xbd,
};

// Sense keys and additional sense codes.
enum : uint8_t {
    kSenseNone = 0x00,
    kSenseNotReady = 0x02,
    kSenseMediumError = 0x03,
    kSenseIllegalRequest = 0x05,
    kSenseUnitAttention = 0x06,
    kSenseAbortedCommand = 0x0b,
};
enum : uint8_t {
    kAscUnrecoveredRead = 0x11,
    kAscInvalidOpcode = 0x20,
    kAscLbaOutOfRange = 0x21,
    kAscInvalidField = 0x24,
    kAscMediumMayHaveChanged = 0x28,
    kAscSavingNotSupported = 0x39,
    kAscMediumNotPresent = 0x3a,
    kAscRemovalPrevented = 0x53,
};

// GET EVENT STATUS NOTIFICATION media event codes.
enum : uint8_t { kMediaEventNone = 0, kMediaEventEjectRequest = 1, kMediaEventNewMedia = 2, kMediaEventRemoval = 3 };

inline constexpr uint32_t kAtaSectorSize = 512;
inline constexpr uint32_t kCdSectorSize = 2048;
inline constexpr uint32_t kMaxMultipleSectors = 16;
inline constexpr uint32_t kDsmMaxBlocks = 8; // IDENTIFY word 105: 512-byte blocks of ranges per command
inline constexpr uint64_t kLba28Limit = 0x0fffffff;
inline constexpr uint64_t kLba48Limit = uint64_t(1) << 48;

// Bus master limits: PRD entries walked per start (a 64 KiB table holds
// 8192), bytes and host segments per backend round.
inline constexpr uint32_t kMaxPrdEntries = 8192;
inline constexpr uint64_t kMaxDmaChunk = 1024 * 1024;
inline constexpr size_t kMaxDmaSegments = 256;

} // namespace emu::devices::ide
